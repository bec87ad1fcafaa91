"""`pvoq doctor -c FILE [--json]`: every check of the troubleshooting note, one line each."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config


@click.command("doctor")
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="The report as JSON, for scripts.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 120.0), default=5.0,
              show_default=True, help="Seconds each network probe may take.")
def doctor(config_path: str, as_json: bool, timeout_s: float) -> None:
    """Diagnose the deployment from this appliance: OK / WARN / FAIL, what was observed,
    and the fix. Exit 1 if any check fails. Changes nothing."""
    from pvoq.doctor.runner import (
        failed,
        file_results,
        render_json,
        render_text,
        run_checks,
    )

    path = Path(config_path).resolve()
    try:
        config = load_config(path)
    except ConfigError as exc:
        results = file_results(path, exc)
        title = f"pvoq doctor: {path}: the configuration does not load"
        click.echo(render_json(results, config=None, path=path) if as_json
                   else render_text(results, title=title))
        sys.exit(1)
    results = run_checks(config, timeout_s=timeout_s)
    if as_json:
        click.echo(render_json(results, config=config, path=path))
    else:
        click.echo(render_text(results, title=f"pvoq doctor: {config.role} "
                                              f"{config.hostname} ({path})"))
    sys.exit(1 if failed(results) else 0)


def register(main: click.Group) -> None:
    main.add_command(doctor)
