/* rfc822.c — TODO: implementation pending. */
