/* queue.c — TODO: implementation pending. */
