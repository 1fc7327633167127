"""The run directory: what makes a folder a specc run, what `specc train` may write into,
and the record of the run in its config.yaml.

A folder is a specc run when its `config.yaml` begins with the line `format: specc-run-v1`
(runs written before that line existed begin with `command: specc ...`). A new run starts
only in a folder that is missing or empty, or that holds nothing but a run of ours which
never finished an epoch (its config.yaml, temporary files): anything else there — a run with
checkpoints, or files specc did not write — is refused with one line, so that nothing a user
keeps in a folder is ever overwritten. A run continues (`--resume`) only in its own folder.

The atomic writer (`specc.fileio`) leaves `.<name>.<random>.tmp` behind only when the process
is killed in the middle of a write; the next start removes those of the run's own files.

config.yaml keeps how the run was first started (`command`, `overrides`, `started`) and adds
one entry per resume to `resumed`, so the original command is never lost.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from pathlib import Path

import yaml

from specc.errors import UserError

RUN_FORMAT = "specc-run-v1"
CONFIG = "config.yaml"
CHECKPOINTS = ("last.pt", "best.pt")
# Everything a run writes into its folder.
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "curves.png")
# ... and the best k epochs' checkpoints (`specc.training.features.TOP_FILE`) when save_top_k > 1.
_TOP = r"top-epoch[1-9][0-9]*\.pt"
_TEMPORARY = re.compile(r"\.(" + "|".join([*(re.escape(n) for n in RUN_FILES), _TOP]) + r")\.[A-Za-z0-9_]+\.tmp")
_FIRST_LINES = (f"format: {RUN_FORMAT}", "command: specc ")
_LISTED = 4


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def is_run_config(path: Path) -> bool:
    """Whether `path` is a config.yaml that specc wrote (read: its first line only)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(_FIRST_LINES)


def check_new_run_dir(out: Path) -> None:
    """Refuse to start a run in `out` unless it is missing, empty, or a run of ours that never
    wrote a checkpoint (one line naming the folder and what is in the way)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise UserError(f"--out {out}: cannot read the folder ({exc.strerror or exc})") from None
    held = [n for n in CHECKPOINTS if n in names] + [n for n in names if re.fullmatch(_TOP, n)]
    if held:
        raise UserError(
            f"{out} already holds a run ({', '.join(held)}): continue it with `specc train --resume {out}`,"
            " or pass --out NEW_DIR"
        )
    ours = CONFIG in names and is_run_config(out / CONFIG)
    # A run killed before its first checkpoint leaves config.yaml (and maybe tensorboard/):
    # nothing there that starting again would lose.
    allowed = {CONFIG, "tensorboard"} if ours else set()
    foreign = [n for n in names if n not in allowed and not _TEMPORARY.fullmatch(n)]
    if foreign:
        shown = ", ".join(foreign[:_LISTED]) + (f" and {len(foreign) - _LISTED} more" if len(foreign) > _LISTED else "")
        raise UserError(
            f"--out {out}: the folder holds {shown}, which is not a specc run — a run starts in a new or"
            " empty folder: pass --out NEW_DIR"
        )


def check_own_run_dir(out: Path) -> None:
    """Refuse to continue a run in a folder whose config.yaml specc did not write."""
    config = out / CONFIG
    if config.exists() and not is_run_config(config):
        raise UserError(
            f"{config}: not the config.yaml of a specc run (its first line is not 'format: {RUN_FORMAT}')"
            " — it would be overwritten; move it away to continue the run"
        )


def remove_temporary(out: Path) -> list[str]:
    """Delete the temporary files an interrupted atomic write left in `out`; their names."""
    removed = []
    with contextlib.suppress(OSError):
        for path in sorted(out.iterdir()):
            if _TEMPORARY.fullmatch(path.name) and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path.name)
    return removed


def read_config(out: Path) -> dict | None:
    """The run's config.yaml as a dict, when specc wrote it and it still parses."""
    path = out / CONFIG
    if not is_run_config(path):
        return None
    try:
        record = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return record if isinstance(record, dict) else None


def config_record(origin: dict, resumed: list[dict], body: dict) -> dict:
    """config.yaml: the format line, how the run was first started (`origin`: command,
    overrides, started), its resumes, then `body` (spec, data, execution, versions, ...)."""
    head = {"format": RUN_FORMAT} | {key: origin.get(key) for key in ("command", "overrides", "started")}
    return head | {"resumed": resumed} | body


def origin_of(previous: dict | None, payload: dict | None, current: dict) -> dict:
    """How the run was first started: from its config.yaml, else from its checkpoint (which
    keeps a copy), else this invocation (a new run)."""
    for source in (previous, (payload or {}).get("run")):
        if isinstance(source, dict) and source.get("command"):
            return {k: source.get(k) for k in ("command", "overrides", "started")}
    return current


def resume_history(previous: dict | None, payload: dict) -> list[dict]:
    """The resumes before this one: config.yaml's list (which also has attempts that stopped
    before their first checkpoint), else the checkpoint's."""
    if isinstance(previous, dict) and isinstance(previous.get("resumed"), list):
        return list(previous["resumed"])
    return list(payload.get("resumes", []))
