"""`python -m vaexprs ...`: the command line (also what MLproject and `torchrun -m vaexprs` run)."""

from vaexprs.cli import run

if __name__ == "__main__":
    run()
