/* ipc-client.c — TODO: implementation pending. */
