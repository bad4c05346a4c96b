"""torch.export's constraint solver failing while it words its suggested fixes (MONAI SwinUNETR:
``AssertionError: Cannot create Dim with inconsistent min=4, max=4``) is judged from the recorded
guards like any constraint violation, never passed on as the raw assertion."""

from __future__ import annotations

from segexport.exporter import dynamic_capture as dc


def _raise_in(name: str) -> AssertionError:
    def solver():
        raise AssertionError("Cannot create Dim with inconsistent min=4, max=4")

    solver.__code__ = solver.__code__.replace(co_name=name)
    try:
        solver()
    except AssertionError as exc:
        return exc
    raise RuntimeError("unreachable")


def test_a_solver_assertion_is_recognised_and_any_other_is_not():
    assert dc._solver_failed(_raise_in("_process_derived_dim_roots"))
    assert not dc._solver_failed(_raise_in("forward"))
    assert not dc._solver_failed(ValueError("x"))
