#!/usr/bin/env python3
# units/instance-template.py — makes the template unit of an instance (postern@NAME.target,
# README "Multiple instances") from the default instance's configured unit, so that each role's
# unit is written once:
#   instance-template.py SYSCONFDIR INPUT OUTPUT
# postern-X.service becomes postern-X@.service, and in it (comment lines aside):
#   - names of Postern units get the instance: postern-qmgr.socket -> postern-qmgr@%i.socket,
#     postern.target -> postern@%i.target;
#   - /var/spool/postern and /run/postern become /var/spool/postern-%i and /run/postern-%i;
#   - a service reads SYSCONFDIR/postern-%i/main.cf (POSTERN_CONFIG) and needs
#     postern-setup@%i.service (which creates the queue directory);
#   - postern-smtpd has no shipped port listeners (25, 587, 465 belong to the default instance):
#     an instance's listeners come from its master.cf (postern-generator) or drop-ins;
#   - the metrics socket listens on /run/postern-%i/metrics until a drop-in gives it a port.
import re
import sys

PORT_SOCKETS = ('postern-smtpd', 'postern-submission', 'postern-submissions')


def unit_ref(m):
    name, suffix = m.group(1), m.group(2)
    return '%s@%%i.%s' % (name, suffix)


def convert(text, sysconfdir, unit):
    out = ['# Template for the instances of postern@NAME.target (README "Multiple instances"),',
           '# generated from %s by units/instance-template.py.' % unit]
    is_service = unit.endswith('.service')
    for line in text.splitlines():
        if line.startswith(('#', '[')) or '=' not in line:
            out.append(line)
            continue
        key, _, value = line.partition('=')
        if key == 'NoDelay' and unit == 'postern-metrics.socket':
            continue    # TCP only; the template listens on a UNIX socket
        if key in ('Wants', 'After', 'Sockets'):
            words = [w for w in value.split()
                     if not any(w == p + '.socket' for p in PORT_SOCKETS)]
            if not words:
                continue
            value = ' '.join(words)
        value = re.sub(r'\b(postern-[a-z]+)\.(socket|service)\b', unit_ref, value)
        value = re.sub(r'\bpostern\.target\b', 'postern@%i.target', value)
        value = re.sub(r'(/var/spool/postern|/run/postern)(?=/|\s|$)', r'\1-%i', value)
        if key == 'Description':
            value += ' (instance %i)'
        if key == 'ListenStream' and unit == 'postern-metrics.socket':
            value = '/run/postern-%i/metrics'
        out.append('%s=%s' % (key, value))
        if key == 'PartOf' and is_service:
            out.append('Requires=postern-setup@%i.service')
            out.append('After=postern-setup@%i.service')
        if key == 'ExecStart':
            out.append('Environment=POSTERN_CONFIG=%s/postern-%%i/main.cf' % sysconfdir)
    return '\n'.join(out) + '\n'


def main():
    sysconfdir, src, dst = sys.argv[1:4]
    unit = src.rsplit('/', 1)[-1]
    with open(src) as f:
        text = f.read()
    with open(dst, 'w') as f:
        f.write(convert(text, sysconfdir, unit))


if __name__ == '__main__':
    main()
