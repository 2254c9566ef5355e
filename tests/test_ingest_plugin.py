"""A third-party source installs with pip alone and ingests with no change to the core."""
import subprocess
import sys
import textwrap
import uuid

from tests.helpers import sign_up
from tests.test_ingest_support import enqueue, enqueued, run_job, stored, uploaded

PLUGIN = '''
"""A tiny fairq source: pipe-separated ``id|amount|status`` rows below a ``ID|AMOUNT|STATUS`` header."""
from decimal import Decimal, InvalidOperation

from app.hooks import RowError, Source, SourceFileError, Transaction, hookimpl


def parse(stream, context):
    lines = iter(stream.read().decode("utf-8").splitlines())
    if next(lines, "").strip().upper() != "ID|AMOUNT|STATUS":
        raise SourceFileError("no ID|AMOUNT|STATUS header")
    for number, text in enumerate(lines, start=2):
        cells = text.split("|")
        try:
            amount = Decimal(cells[1])
        except (IndexError, InvalidOperation):
            yield RowError(number, "amount is not a number", text)
            continue
        yield Transaction(txn_id=cells[0], amount=amount, status=cells[2].upper(), txn_time=None,
                          raw_row={"id": cells[0], "amount": cells[1], "status": cells[2]}, line=number)


@hookimpl
def fairq_register_sources():
    return [Source(name="PIPES", aliases=("PSV",), description="pipe-separated demo", parse=parse)]
'''


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def can_build_wheels_offline() -> bool:
    """setuptools builds wheels by itself from 70.1 on; before, it needs the ``wheel`` package."""
    try:
        import wheel  # noqa: F401
    except ImportError:
        import setuptools

        return tuple(int(part) for part in setuptools.__version__.split(".")[:2]) >= (70, 1)
    return True


def test_a_pip_installed_source_is_discovered_and_ingests(client, tmp_path):
    module = f"fairq_pipes_{uuid.uuid4().hex[:8]}"
    distribution = module.replace("_", "-")
    folder = tmp_path / distribution
    folder.mkdir()
    (folder / f"{module}.py").write_text(PLUGIN)
    (folder / "setup.cfg").write_text(textwrap.dedent(f"""\
        [metadata]
        name = {distribution}
        version = 0.0.1

        [options]
        py_modules = {module}

        [options.entry_points]
        fairq.plugins =
            pipes = {module}
        """))
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    a = sign_up(client, "acme")
    path = uploaded(client, a, b"ID|AMOUNT|STATUS\nP-1|10.50|success\nP-2|abc|failed\nP-3|7|pending\n",
                    name="demo.psv")
    assert enqueue(client, a, path, "psv").status_code == 400  # not installed yet

    # As its users would: pip alone (offline when this environment can build the wheel itself)
    isolation = ["--no-build-isolation"] if can_build_wheels_offline() else []
    pip("install", "--no-deps", *isolation, "--quiet", str(folder))
    try:
        job_id = enqueued(client, a, path, "psv")  # found by its alias, in any case
        context = run_job(job_id)
        assert context.result == {"rows_read": 3, "rows_loaded": 2, "duplicates": 0, "conflicts": 0,
                                  "rejected": 1}
        rows = stored("acme")
        assert [(t.txn_id, str(t.amount), t.status, t.source) for t in rows] == [
            ("P-1", "10.50", "SUCCESS", "PIPES"), ("P-3", "7.00", "PENDING", "PIPES")]
    finally:
        pip("uninstall", "--yes", "--quiet", distribution)
    assert enqueue(client, a, path, "psv").status_code == 400  # gone with its distribution
