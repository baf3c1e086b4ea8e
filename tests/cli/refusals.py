"""What every refused command looks like: exit code 2 and one line on stderr."""

from __future__ import annotations


def one_error_line(result) -> str:
    """The single ``Error: ...`` line of a CliRunner ``result`` that exited 2 (asserted)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    return lines[0]
