/* ipc-server.c — TODO: implementation pending. */
