/* sd-notify MESSAGE...: sends the messages, one per line, as one datagram
 * to $NOTIFY_SOCKET (a path, or @name for an abstract socket), as
 * sd_notify(3) does. Static, so the tests can bind it into any container;
 * busybox has no AF_UNIX datagram client. Exit 0 when sent. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *target = getenv("NOTIFY_SOCKET");
    if (!target || !*target) {
        fprintf(stderr, "sd-notify: no NOTIFY_SOCKET\n");
        return 1;
    }
    char msg[4096];
    size_t len = 0;
    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (len + n + 1 > sizeof msg) {
            fprintf(stderr, "sd-notify: message too long\n");
            return 1;
        }
        memcpy(msg + len, argv[i], n);
        len += n;
        msg[len++] = '\n';
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t tlen = strlen(target);
    if (tlen >= sizeof addr.sun_path) {
        fprintf(stderr, "sd-notify: NOTIFY_SOCKET too long\n");
        return 1;
    }
    memcpy(addr.sun_path, target, tlen);
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + tlen;
    if (target[0] == '@')
        addr.sun_path[0] = 0;
    else
        alen++;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, msg, len, 0, (struct sockaddr *)&addr, alen) < 0) {
        perror("sd-notify: send");
        return 1;
    }
    return 0;
}
