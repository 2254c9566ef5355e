"""bench/reconcile.py, small: a fresh load, then ``--reuse`` of the same data starting from the same state."""
import re
import subprocess
import sys

from tests.conftest import ROOT

#: A database of this test's own (the benchmark empties the one it is given).
DATABASE = "fairq_test_bench_reconcile"


def bench(*args: str) -> str:
    result = subprocess.run([sys.executable, "bench/reconcile.py", "--rows", "2000", "--database", DATABASE, *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return result.stdout


def measured(output: str, name: str) -> str:
    return re.search(rf"^\|\s+{re.escape(name)}\s+\| (.*) \| .* \|$", output, re.MULTILINE).group(1)


def test_reuse_keeps_the_data_and_starts_from_a_fresh_loads_state():
    # Given a fresh load (its run's breaks all new)
    fresh = bench()
    assert "rows loaded with COPY" in fresh
    # When the same data is asked for with --reuse (after the fresh load's runs wrote their breaks)
    output = bench("--reuse")
    # Then nothing is loaded, and the runs find what the fresh load's found, every break new again
    assert "reusing the" in output and "loaded with COPY" not in output
    for name in ("rows (internal + external)", "injected breaks", "precision", "recall", "matched", "breaks",
                 "the same period again"):
        got, want = measured(output, name), measured(fresh, name)
        if name == "the same period again":  # its time differs
            got, want = got.split("; ", 1)[1], want.split("; ", 1)[1]
        assert got == want, name
    assert '"persisting": 0' in measured(fresh, "breaks") and measured(fresh, "precision").startswith("100.0000%")


def test_reuse_loads_again_when_the_data_asked_for_differs():
    bench()
    output = bench("--reuse", "--seed", "8")
    assert "reusing the" not in output and "rows loaded with COPY" in output
