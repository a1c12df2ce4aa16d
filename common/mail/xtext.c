/* xtext.c — TODO: implementation pending. */
