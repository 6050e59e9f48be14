/*
 * Reference FUSE server for the benchmark: the plainest raw /dev/fuse server
 * that serves one file from memory, single-threaded, classic read/writev
 * loop, the same INIT parameters as @r3map/native's (max_pages 256,
 * max_write 1 MiB). The bench compares our server against this.
 *
 *   fuse-ref MOUNTPOINT SIZE     (root; exits when unmounted)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FILE_INO 2
#define MAX_WRITE (1u << 20)
#define BUFFER_SIZE (MAX_WRITE + 65536)

static uint8_t *data;
static uint64_t size;

static void reply(int fd, uint64_t unique, int error, const void *payload, size_t length) {
  struct fuse_out_header header = {.len = sizeof(header) + (error ? 0 : length), .error = -error, .unique = unique};
  struct iovec iov[2] = {{&header, sizeof(header)}, {(void *)payload, length}};
  writev(fd, iov, error || length == 0 ? 1 : 2);
}

static struct fuse_attr attr_of(uint64_t ino) {
  struct fuse_attr a = {.ino = ino, .blksize = 4096};
  if (ino == FUSE_ROOT_ID) {
    a.mode = S_IFDIR | 0755;
    a.nlink = 2;
  } else {
    a.mode = S_IFREG | 0600;
    a.nlink = 1;
    a.size = size;
    a.blocks = (size + 511) / 512;
  }
  return a;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MOUNTPOINT SIZE\n", argv[0]);
    return 2;
  }
  size = strtoull(argv[2], NULL, 10);
  data = malloc(size);
  for (uint64_t i = 0; i < size; i++) data[i] = (uint8_t)(i * 2654435761u >> 24);
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  char options[128];
  snprintf(options, sizeof(options), "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fd);
  if (fd < 0 || mount("fuseref", argv[1], "fuse.fuseref", MS_NOSUID | MS_NODEV, options) != 0) {
    perror("mount");
    return 1;
  }
  uint8_t *buffer = aligned_alloc(4096, BUFFER_SIZE);
  for (;;) {
    ssize_t n = read(fd, buffer, BUFFER_SIZE);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
      break;
    }
    struct fuse_in_header *in = (struct fuse_in_header *)buffer;
    void *arg = buffer + sizeof(*in);
    switch (in->opcode) {
      case FUSE_INIT: {
        struct fuse_init_in *i = arg;
        struct fuse_init_out out = {.major = FUSE_KERNEL_VERSION,
                                    .minor = i->minor < FUSE_KERNEL_MINOR_VERSION ? i->minor : FUSE_KERNEL_MINOR_VERSION,
                                    .max_readahead = i->max_readahead < MAX_WRITE ? i->max_readahead : MAX_WRITE,
                                    .flags = i->flags & (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES),
                                    .max_background = 64,
                                    .congestion_threshold = 48,
                                    .max_write = MAX_WRITE,
                                    .time_gran = 1,
                                    .max_pages = 256};
        reply(fd, in->unique, 0, &out, sizeof(out));
        break;
      }
      case FUSE_LOOKUP: {
        if (strcmp(arg, "disk") != 0) {
          reply(fd, in->unique, ENOENT, NULL, 0);
          break;
        }
        struct fuse_entry_out out = {.nodeid = FILE_INO, .entry_valid = 86400, .attr_valid = 86400, .attr = attr_of(FILE_INO)};
        reply(fd, in->unique, 0, &out, sizeof(out));
        break;
      }
      case FUSE_GETATTR:
      case FUSE_SETATTR: {
        struct fuse_attr_out out = {.attr_valid = 86400, .attr = attr_of(in->nodeid)};
        reply(fd, in->unique, 0, &out, sizeof(out));
        break;
      }
      case FUSE_OPEN:
      case FUSE_OPENDIR: {
        struct fuse_open_out out = {.open_flags = in->opcode == FUSE_OPEN ? FOPEN_KEEP_CACHE : 0};
        reply(fd, in->unique, 0, &out, sizeof(out));
        break;
      }
      case FUSE_READ: {
        struct fuse_read_in *r = arg;
        uint64_t count = r->offset >= size ? 0 : size - r->offset < r->size ? size - r->offset : r->size;
        reply(fd, in->unique, 0, data + r->offset, count);
        break;
      }
      case FUSE_FORGET:
      case FUSE_BATCH_FORGET:
      case FUSE_INTERRUPT:
        break;
      case FUSE_RELEASE:
      case FUSE_RELEASEDIR:
      case FUSE_FLUSH:
      case FUSE_FSYNC:
        reply(fd, in->unique, 0, NULL, 0);
        break;
      default:
        reply(fd, in->unique, ENOSYS, NULL, 0);
    }
  }
  return 0;
}
