/* params.c — TODO: implementation pending. */
