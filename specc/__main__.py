"""`python -m specc ...` (and `torchrun -m specc train ...`): the `specc` command."""

from specc.cli import run

if __name__ == "__main__":
    run()
