env \
  SINGULARITY_BINDPATH=/scratch,/software,/var/run/munge/munge.socket.2,/etc/slurm:/etc/slurm:ro,/var/opt/cray/pe,/opt/cray:/opt/cray:ro,/opt/xpmem:/opt/xpmem:ro,/usr/lib64/libcxi.so.1:/.hpcrun/lib/libcxi.so.1:ro,/usr/lib64/libjson-c.so.3:/.hpcrun/lib/libjson-c.so.3:ro,/usr/lib64/libmunge.so.2:/.hpcrun/lib/libmunge.so.2:ro,/usr/lib64/liblustreapi.so.1:/.hpcrun/lib/liblustreapi.so.1:ro \
  'SINGULARITYENV_LD_LIBRARY_PATH=/.hpcrun/lib:$LD_LIBRARY_PATH' \
  'SINGULARITYENV_LD_PRELOAD=/opt/xpmem/lib64/libxpmem.so.0:$LD_PRELOAD' \
  srun --mpi=cray_shasta -n 2 singularity exec app.sif python hello.py
