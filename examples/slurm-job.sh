#!/bin/bash
# A Slurm batch job that runs an MPI application from a container with hpcrun.
#
#   sbatch examples/slurm-job.sh            (HPCRUN_SITE or --site names the site profile)
#
# The Python programs are the image's own copies (/opt/examples/, put there by
# examples/mpich-mpi4py/apptainer.def), so the job does not depend on the directory it is
# submitted from; IMAGE is an absolute path for the same reason.
#
# hpcrun runs ONCE, here in the batch script: it reads the image, checks that the host MPI
# can serve the application (refusing with the reason if not), then execs srun with the
# runtime's bind path and environment.  Nothing of hpcrun runs per rank.
#SBATCH --job-name=hpcrun-hello
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --time=00:05:00
#SBATCH --output=hpcrun-hello-%j.out
set -euo pipefail

IMAGE=${IMAGE:-$HOME/images/mpich-mpi4py.sif}
SITE=${HPCRUN_SITE:-debian-mpich}

# What will happen, and why (binds, variables, verdict), without running anything:
hpcrun --site "$SITE" --explain srun "$IMAGE" python3 /opt/examples/hello-mpi4py.py

# The job: every rank prints its hello line and the MPI library that served it.
hpcrun --site "$SITE" srun "$IMAGE" python3 /opt/examples/hello-mpi4py.py

# Point-to-point bandwidth between two ranks on different nodes:
hpcrun --site "$SITE" srun --ntasks=2 --ntasks-per-node=1 "$IMAGE" \
  python3 /opt/examples/osu_bw-mpi4py.py
