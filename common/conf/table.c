/* table.c — TODO: implementation pending. */
