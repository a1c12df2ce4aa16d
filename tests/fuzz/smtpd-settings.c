/* smtpd-settings.c — compiles daemons/smtpd/smtpd.c for the smtpd fuzz target with its main()
 * renamed, so the target uses the real smtpd_settings_new()/_ref()/_unref() (and nothing of
 * smtpd's sources has to change). The event loop and accept code come along unused. */
#define main postern_smtpd_main
int postern_smtpd_main(int argc, char *argv[]);
#include "../../daemons/smtpd/smtpd.c"
