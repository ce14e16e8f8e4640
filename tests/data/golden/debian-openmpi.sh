# warning: libraries[0]: /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/*.so is a glob and the host was not surveyed: nothing bound
# warning: libraries[1]: /usr/lib/x86_64-linux-gnu/ucx/libuct_*.so* is a glob and the host was not surveyed: nothing bound
# warning: libraries[2]: /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix/*.so is a glob and the host was not surveyed: nothing bound
# warning: /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 is bound over the image's directory /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 (inside /usr/lib/x86_64-linux-gnu): the image's own copy, if any, is hidden
# warning: /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix is bound over the image's directory /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix (inside /usr/lib/x86_64-linux-gnu): the image's own copy, if any, is hidden
env \
  APPTAINER_BINDPATH=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3:/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3:ro,/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix:/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix:ro,/tmp,/usr/lib/x86_64-linux-gnu/libmpi.so.40:/.hpcrun/lib/libmpi.so.40:ro,/usr/lib/x86_64-linux-gnu/libmpi_mpifh.so.40:/.hpcrun/lib/libmpi_mpifh.so.40:ro,/usr/lib/x86_64-linux-gnu/libmpi_usempif08.so.40:/.hpcrun/lib/libmpi_usempif08.so.40:ro,/usr/lib/x86_64-linux-gnu/libmpi_usempi_ignore_tkr.so.40:/.hpcrun/lib/libmpi_usempi_ignore_tkr.so.40:ro,/usr/lib/x86_64-linux-gnu/libmpi_cxx.so.40:/.hpcrun/lib/libmpi_cxx.so.40:ro \
  'APPTAINERENV_LD_LIBRARY_PATH=/.hpcrun/lib:$LD_LIBRARY_PATH' \
  srun --mpi=pmix -n 2 apptainer exec app.sif python hello.py
