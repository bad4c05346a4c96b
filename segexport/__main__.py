"""``python -m segexport`` runs the same Typer app as the ``segexport`` console script."""

from segexport.cli import main

if __name__ == "__main__":
    main()
