"""`python -m emp`: the same as the `emp` console script."""

from emp.cli import main

main()
