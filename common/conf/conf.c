/* conf.c — TODO: implementation pending. */
