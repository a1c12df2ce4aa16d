/* address.c — TODO: implementation pending. */
