/* The lifeline as a program: what harness/qemu/lifeline.py does, without a Python
 * start-up (~15 ms) in front of every QEMU.
 *
 *     _lifeline PARENT_PID PROGRAM ARGS...
 *
 * arms the parent-death signal (SIGKILL), checks that its parent is still PARENT_PID
 * (a parent that died before the arming has left us re-parented: exit 125, start
 * nothing), then execs PROGRAM; the signal survives the exec.  Built by setup.py next
 * to lifeline.py, which falls back to itself when the program is missing. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define ORPHANED_EXIT 125 /* lifeline.ORPHANED_EXIT */

int main(int argc, char **argv)
{
    char *end;
    long parent;

    if (argc < 3) {
        fprintf(stderr, "usage: %s PARENT_PID PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    errno = 0;
    parent = strtol(argv[1], &end, 10);
    if (errno != 0 || *end != '\0' || parent <= 0) {
        fprintf(stderr, "lifeline: %s is not a process id\n", argv[1]);
        return 2;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
        perror("lifeline: prctl(PR_SET_PDEATHSIG)");
        return 127;
    }
    if ((long)getppid() != parent)
        _exit(ORPHANED_EXIT);
    execvp(argv[2], argv + 2);
    fprintf(stderr, "lifeline: cannot run %s: %s\n", argv[2], strerror(errno));
    _exit(127);
}
