/* ipc-record.c — TODO: implementation pending. */
