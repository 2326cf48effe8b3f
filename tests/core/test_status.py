from mads.core.status import StatusLine, StatusReport, connected_line


def test_the_guides_fiedler_block_exactly() -> None:
    report = StatusReport.build(
        "FiedlerV1",
        "fiedler",
        [
            connected_line("Conversation Bus", True),
            connected_line("Sequential Thinking", True),
            StatusLine(label="Database Status", value="OK", ok=True),
        ],
    )
    assert report.render_text() == (
        "[FiedlerV1 Status]\n"
        "- MAD Name: fiedler\n"
        "- Status: HEALTHY\n"
        "- Conversation Bus Connected: True\n"
        "- Sequential Thinking Connected: True\n"
        "- Database Status: OK"
    )
    assert report.healthy


def test_any_failed_line_degrades_the_mad() -> None:
    report = StatusReport.build("GraceV0", "grace", [connected_line("Conversation Bus", False)])
    assert report.status == "DEGRADED"
    assert not report.healthy
    assert "- Conversation Bus Connected: False" in report.render_text()
