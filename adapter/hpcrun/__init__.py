"""hpcrun: launch containerised MPI/GPU applications with the host's MPI (the bind model).

Pipeline: profiles -> image -> elf -> resolve -> plan -> launch/render.
"""

__version__ = "0.1.0.dev0"
