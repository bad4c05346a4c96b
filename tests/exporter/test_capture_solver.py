"""torch.export's constraint solver failing while it words its suggested fixes (MONAI SwinUNETR:
``AssertionError: Cannot create Dim with inconsistent min=4, max=4``) is judged from the recorded
guards like any constraint violation, never passed on as the raw assertion."""

from __future__ import annotations

import sympy

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


def test_size_bounds_are_branches_and_equalities_are_not():
    h = sympy.Symbol("s0", integer=True, positive=True)
    assert dc._is_bound(sympy.And(sympy.Le(58, h), sympy.Le(h, 113)))
    assert dc._is_bound(sympy.Le(h // 16, 7))
    assert not dc._is_bound(sympy.Eq(h, 32 * (h // 32)))


def test_the_hint_names_the_valid_sizes_and_the_range_to_pass():
    hint = dc._valid_hint({2: [64, 96], 3: [64, 96, 128]})
    assert "height a multiple of 32 in 64..96" in hint and "pass --hw-range 64x64:96x128" in hint
    assert dc._valid_hint({2: [], 3: [64]}).startswith(": keep sizes as shapes")
