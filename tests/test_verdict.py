"""The verdict of an error-log entry: what its code's severity says (harness.verdict)."""

from __future__ import annotations

from pathlib import Path

from harness.config import parse_machine_text
from harness.nt.errorlog import ErrorLog
from harness.nt.status import SEVERITIES, IoErrorCode, severity
from harness.verdict import CLEAN, CONFLICT, ERROR_LOG_VERDICTS, EXIT_CODES, WARNING, error_log_verdict


def test_every_severity_has_a_verdict_and_the_codes_carry_ntiologc_h_severities() -> None:
    assert set(ERROR_LOG_VERDICTS) == set(SEVERITIES)
    assert severity(IoErrorCode.IO_ERR_RETRY_SUCCEEDED) == "success"
    assert severity(0x4004009F) == "informational"
    assert severity(IoErrorCode.IO_WRN_BAD_FIRMWARE) == "warning"
    # every code a driver or the I/O manager of the harness writes today is an error
    errors = set(IoErrorCode) - {IoErrorCode.IO_ERR_RETRY_SUCCEEDED, IoErrorCode.IO_WRN_BAD_FIRMWARE}
    assert {severity(c) for c in errors} == {"error"}
    log = ErrorLog()
    for code, verdict in [(IoErrorCode.IO_ERR_RETRY_SUCCEEDED, CLEAN), (IoErrorCode.IO_WRN_BAD_FIRMWARE, WARNING),
                          (IoErrorCode.IO_ERR_INCORRECT_IRQL, CONFLICT)]:
        entry = log.log(code, "m", driver="d").to_dict()
        assert error_log_verdict(entry) == verdict, entry
    assert error_log_verdict({"severity": severity(0x4004009F)}) == CLEAN


def test_a_drivers_own_entries_weigh_on_the_jobs_verdict_by_severity(tmp_path: Path) -> None:
    """One clean machine, its drivers loaded as the job loads them, then a driver writes an
    entry of each severity in turn (IoWriteErrorLogEntry): the verdict, the exit code, the
    findings and the counts follow each, the worst entry so far winning."""
    from harness.job import collect
    from harness.nt.registry import Registry
    from harness.qemu.actions import run_firmware_and_steps
    from harness.qemu.machine import Machine
    from harness.testbed import Testbed, load_steps
    spec = parse_machine_text("machine: isapc\ndevices:\n  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}\n")
    registry = Registry(tmp_path / "reg.sqlite")
    seen = []
    try:
        with Machine(spec) as machine:
            run_firmware_and_steps(machine)
            bed = Testbed(machine, registry)
            bed.run(load_steps(spec))
            serial = next(r for r, _ in bed.loaded if r.name == "Serial")
            seen.append(collect(bed, tmp_path / "clean"))
            for code, text in [(IoErrorCode.IO_ERR_RETRY_SUCCEEDED, "a retry worked"),
                               (IoErrorCode.IO_WRN_BAD_FIRMWARE, "old firmware"),
                               (IoErrorCode.IO_ERR_INCORRECT_IRQL, "the card is set to IRQ 3")]:
                bed.io.error(serial.driver_object, code, text)
                seen.append(collect(bed, tmp_path / code.name))
    finally:
        registry.close()
    assert [r.verdict for r in seen] == [CLEAN, CLEAN, WARNING, CONFLICT], [r.format_text() for r in seen]
    assert [r.exit_code for r in seen] == [EXIT_CODES[v] for v in (CLEAN, CLEAN, WARNING, CONFLICT)]
    clean, retried, warned, failed = seen
    assert clean.findings() == retried.findings() == [], retried.format_text()
    assert "IO_ERR_RETRY_SUCCEEDED (success): a retry worked" in retried.format_text()
    assert warned.findings() == ["error-log IO_WRN_BAD_FIRMWARE (warning): old firmware"]
    assert warned.counts() == "1 driver error-log record(s)"
    assert failed.findings()[-1] == "error-log IO_ERR_INCORRECT_IRQL (error): the card is set to IRQ 3"
    assert failed.to_dict()["error_log"][-1]["severity"] == "error"
    # the HTML page says the report's verdict (it said 'findings' for a warning too)
    from harness.htmlreport import machine_report_html
    assert '<p class="warn" id="verdict">Verdict: <b>warning</b> (exit 3; 1 finding(s))</p>' in machine_report_html(warned)
    assert '<p class="ok" id="verdict">Verdict: <b>clean</b> (exit 0; 0 finding(s))</p>' in machine_report_html(retried)
