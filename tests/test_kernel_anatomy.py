"""benchmarks/kernel_anatomy.py: its variants still apply to the kernel, and it reads callgrind and objdump right."""

from pathlib import Path

import pytest

from benchmarks.kernel_anatomy import VARIANTS, callgrind_costs, instruction_kinds, variant_tree

DYNAMICS = Path(__file__).resolve().parents[1] / "sim" / "dynamics.py"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_changes_the_kernel_where_it_says(name, tmp_path):
    source = DYNAMICS.read_text()
    for old, _ in VARIANTS[name][1]:
        assert source.count(old) == 1, (
            f"variant {name}: {old!r} should be in sim/dynamics.py once (the kernel changed?)"
        )
    changed = (variant_tree(name, tmp_path) / "sim" / "dynamics.py").read_text()
    assert changed != source, f"variant {name} left the kernel as it was"
    for _, new in VARIANTS[name][1]:
        assert new in changed, f"variant {name}: {new!r} missing from the copy"


def test_callgrind_positions_are_followed_and_call_costs_kept_apart():
    profile = """\
positions: instr line
events: Ir
fn=(1) 0x0000000000001000
0x1000 0 5
+4 0 5
* 0 1
cfn=(2) exp
calls=5 0x9000 0
+2 0 300
+3 0 5
-1 0 2
fn=(3) exp_caller
0x2000 0 7
fn=(1)
0x1010 0 4
""".splitlines()
    costs, names, calls = callgrind_costs(profile)
    assert names == {"1": "0x0000000000001000", "2": "exp", "3": "exp_caller"}
    assert costs[("1", 0x1000)] == 5, "an absolute position"
    assert costs[("1", 0x1004)] == 6, "a relative position and a repeated one (*) add up"
    assert ("1", 0x1006) not in costs, "the line after calls= is the call's cost, not the caller's own"
    assert calls[("1", "2")] == [5, 300], "the number of calls and their inclusive cost"
    assert costs[("1", 0x1009)] == 5 and costs[("1", 0x1008)] == 2, "positions after a call go on from it"
    assert costs[("3", 0x2000)] == 7
    assert costs[("1", 0x1010)] == 4, "a function named again by its number alone"


def test_instructions_are_sorted_by_kind_within_the_body():
    disassembly = """\
    1000:\tc5 fb 58 c1          \tvaddsd %xmm1,%xmm0,%xmm0
    1004:\tc5 fb 10 44 24 08    \tvmovsd 0x8(%rsp),%xmm0
    100a:\tc5 fb 11 44 24 08    \tvmovsd %xmm0,0x8(%rsp)
    1010:\t48 b8 00 00 00 00 00 \tmovabs $0x0,%rax
    101a:\t75 e4                \tjne    0x1000
    101c:\tc3                   \tret
"""
    costs = {0x1000: 10, 0x1004: 10, 0x100A: 3, 0x1010: 2, 0x101A: 10, 0x101C: 1}
    kinds = instruction_kinds(disassembly, costs, 0x1000, 0x101C)
    assert kinds == {
        "floating-point arithmetic": 10,
        "reload from the stack (spilled value)": 10,
        "spill to the stack": 3,
        "load of an address or constant (movabs)": 2,
        "jump": 10,
    }, "each instruction counted once, by kind, and nothing past the body's end"


def test_a_profile_without_instruction_positions_is_refused():
    with pytest.raises(ValueError, match="instr line"):
        callgrind_costs(["positions: line", "events: Ir", "fn=(1) f", "16 5"])


def test_conditional_moves_are_selects_not_moves():
    disassembly = (
        "    2000:\t48 0f 44 c1          \tcmove  %rcx,%rax\n    2004:\t48 89 c8             \tmov    %rcx,%rax\n"
    )
    kinds = instruction_kinds(disassembly, {0x2000: 1, 0x2004: 1}, 0x2000, 0x2008)
    assert kinds == {"select (blend, setcc, cmov)": 1, "register move": 1}, kinds
