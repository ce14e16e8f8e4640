# warning: libraries[0]: /usr/lib/x86_64-linux-gnu/ucx/libuct_*.so* is a glob and the host was not surveyed: nothing bound
env \
  APPTAINER_BINDPATH=/usr/lib/x86_64-linux-gnu/libmpich.so.12:/.hpcrun/lib/libmpich.so.12:ro,/usr/lib/x86_64-linux-gnu/libmpichfort.so.12:/.hpcrun/lib/libmpichfort.so.12:ro,/usr/lib/x86_64-linux-gnu/libmpichcxx.so.12:/.hpcrun/lib/libmpichcxx.so.12:ro \
  'APPTAINERENV_LD_LIBRARY_PATH=/.hpcrun/lib:$LD_LIBRARY_PATH' \
  APPTAINERENV_UCX_POSIX_USE_PROC_LINK=n \
  srun --mpi=pmi2 -n 2 apptainer exec app.sif python hello.py
