/* Kernel-socket transport helpers: batched recvmmsg/sendmmsg with SO_TIMESTAMPING. */
