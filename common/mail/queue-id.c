/* queue-id.c — TODO: implementation pending. */
