"""The README's quick start and tour run as written, in a fresh copy of the repository's
specs/, docs/ and examples/: every `specc ...` command of the ```sh / ```bash blocks under the
"Quick start" and "A tour of the commands" headings (down to the next `## ` heading, so
subsections added to the tour are run too), in order, through bash (globs, pipes and
redirections as a user's shell has them), each exiting 0.

- Quick start lines such as `pip install ... && specc compile ...` contribute their `specc`
  part only; nothing is installed.
- A line ending in the comment `# (not run by the tour test)` is skipped.
- `specc train` runs at most MAX_STEPS steps: a full recipe (no `--max-steps`) gets
  `--max-steps 5`, a smoke run's `--max-steps 20` becomes 5 (the same code, a third of the
  time: the suite stays fast).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from specc.training.data.idx import FASHION_DEFAULT_DIRS

ROOT = Path(__file__).resolve().parents[1]
SKIP_MARKER = "# (not run by the tour test)"
MAX_STEPS = 5
SECTIONS = ("quick start", "a tour of the commands")
COPIED = ("specs", "docs", "examples")
HAVE_FASHION = (Path(FASHION_DEFAULT_DIRS[0]) / "t10k-labels-idx1-ubyte.gz").exists()


def sections(text: str) -> list[str]:
    """The text of each `## ` section whose heading is one of SECTIONS, subsections included."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("## "):
            current = [] if line[3:].strip().lower() in SECTIONS else None
            if current is not None:
                found.append(current)
        elif current is not None:
            current.append(line)
    return ["\n".join(lines) for lines in found]


def shell_lines(section: str) -> list[str]:
    """The logical lines of the section's ```sh / ```bash blocks (backslash continuations joined)."""
    out = []
    for block in re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", section, flags=re.M | re.S):
        out += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return out


def tour_commands(readme: str) -> list[str]:
    commands = []
    for section in sections(readme):
        for line in shell_lines(section):
            if line.endswith(SKIP_MARKER):
                continue
            for part in line.split("&&"):  # `pip install ... && specc compile ...`: the specc part
                part = part.strip()
                if part.startswith("specc "):
                    commands.append(_shortened(part))
    return commands


def _shortened(command: str) -> str:
    """A `specc train` line with at most MAX_STEPS steps (each costs ~0.6 s of CPU here)."""
    if command.split()[:2] != ["specc", "train"]:
        return command
    code = command.split(" #")[0].rstrip()
    given = re.search(r"--max-steps[ =](\d+)", code)
    if given is None:
        return f"{code} --max-steps {MAX_STEPS}"
    return code.replace(given.group(0), f"--max-steps {min(int(given.group(1)), MAX_STEPS)}")


def test_extractor_reads_the_readme_as_intended():
    readme = "\n".join(
        [
            "## Quick start",
            "```sh",
            "pip install -e '.[all]' && specc compile specs/a.yaml",
            "```",
            "## A tour of the commands",
            "```sh",
            "specc check specs/*.yaml  # comment",
            "specc train specs/a.yaml --lr 0.1 \\",
            "    --epochs 3  # full run",
            "specc train --resume runs/a --max-steps 400  # continued",
            "specc train specs/a.yaml --max-steps 2",
            "specc slow specs/a.yaml  # (not run by the tour test)",
            "```",
            "### A subsection",
            "```bash",
            "specc predict build/a.onnx x.png",
            "python3 -m pytest -q",
            "```",
            "```python",
            "specc.check('x')",
            "```",
            "## Elsewhere",
            "```sh",
            "specc check other.yaml",
            "```",
        ]
    )
    assert tour_commands(readme) == [
        "specc compile specs/a.yaml",
        "specc check specs/*.yaml  # comment",
        "specc train specs/a.yaml --lr 0.1      --epochs 3 --max-steps 5",
        "specc train --resume runs/a --max-steps 5",
        "specc train specs/a.yaml --max-steps 2",
        "specc predict build/a.onnx x.png",
    ]


@pytest.mark.skipif(not HAVE_FASHION, reason="the tour trains on Fashion-MNIST (apt-get install dataset-fashion-mnist)")
def test_readme_quick_start_and_tour_run_as_written(tmp_path):
    commands = tour_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 10, commands
    for folder in COPIED:  # copies: a command may write into them (specc schema > docs/...)
        shutil.copytree(ROOT / folder, tmp_path / folder)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    timings = []
    for command in commands:
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        timings.append((time.perf_counter() - start, _children_cpu() - cpu, command))
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stderr[-2000:]}"
    # Shown with -s: wall and CPU seconds (all cores) per command; the slow ones are worth knowing.
    print("\n".join(f"{wall:6.1f} s wall {cpu:6.1f} s cpu  {command}" for wall, cpu, command in timings))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
