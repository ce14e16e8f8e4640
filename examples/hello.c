/* MPI hello world in C: which rank, which host, and which MPI library served it.
 *
 *   mpicc -o hello hello.c && hpcrun srun -n 2 IMAGE /usr/local/bin/hello
 *
 * Prints "Hello World! I am process R of N on HOST", the first line of
 * MPI_Get_library_version and the path of the MPI library mapped into the process
 * (from /proc/self/maps): under hpcrun, the host library bound into the container.
 * Then "rank R libmpi-file: DEV INODE SIZE" of that file as the rank sees it (stat), so a
 * test can tell whether it is the very host file (bind mounts keep device and inode). */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void mpi_library_path(char *out, size_t size)
{
    char line[4096];
    FILE *maps = fopen("/proc/self/maps", "r");
    snprintf(out, size, "(no libmpi mapped)");
    if (!maps)
        return;
    while (fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        char *base;
        if (!path)
            continue;
        path[strcspn(path, "\n")] = '\0';
        base = strrchr(path, '/') + 1;
        if (!strncmp(base, "libmpi.so", 9) || !strncmp(base, "libmpich.so", 11) ||
            !strncmp(base, "libmpi_abi.so", 13)) {
            snprintf(out, size, "%s", path);
            break;
        }
    }
    fclose(maps);
}

int main(int argc, char **argv)
{
    int rank, size, len;
    char host[MPI_MAX_PROCESSOR_NAME];
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    char path[4096];
    struct stat st;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    MPI_Get_library_version(version, &len);
    version[strcspn(version, "\n")] = '\0';
    mpi_library_path(path, sizeof path);
    printf("Hello World! I am process %d of %d on %s\n", rank, size, host);
    printf("rank %d library: %s\n", rank, version);
    printf("rank %d libmpi: %s\n", rank, path);
    if (stat(path, &st) == 0)
        printf("rank %d libmpi-file: %llu %llu %lld\n", rank, (unsigned long long)st.st_dev,
               (unsigned long long)st.st_ino, (long long)st.st_size);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
