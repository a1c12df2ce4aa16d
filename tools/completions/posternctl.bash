# bash completion for posternctl — verbs, main.cf parameter names (from `posternctl config -d -H`),
# queue ids (from `posternctl queue`) and the options of each verb.

_posternctl_queue_ids() {
        posternctl queue 2>/dev/null | awk '/^[0-9A-Za-z]+[*!]? / { sub(/[*!]$/, "", $1); print $1 }'
}

_posternctl() {
        local cur prev verb
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        local verbs="config check import route queue show log qshape status flush hold release delete requeue tlsrpt help"
        # -c DIR / -i NAME before the verb choose the instance (README "Multiple instances")
        local v=1
        while [ "$v" -lt "$COMP_CWORD" ] && [[ ${COMP_WORDS[v]} == -[ci] ]]; do
                v=$((v + 2))
        done
        if [ "$v" -gt "$COMP_CWORD" ]; then
                if [ "$prev" = -c ]; then
                        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
                else
                        mapfile -t COMPREPLY < <(compgen -W "$(cd /etc 2>/dev/null && ls -d postern-* 2>/dev/null | sed 's/^postern-//')" -- "$cur")
                fi
                return
        fi
        if [ "$COMP_CWORD" -eq "$v" ]; then
                mapfile -t COMPREPLY < <(compgen -W "$verbs -c -i" -- "$cur")
                return
        fi
        verb=${COMP_WORDS[v]}
        case $verb in
        config)
                if [ "$prev" = -c ]; then
                        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
                elif [[ $cur == -* ]]; then
                        mapfile -t COMPREPLY < <(compgen -W "-n -d -x -h -H -j -e -# -X -M -F -P -c --help --markdown --man" -- "$cur")
                else
                        mapfile -t COMPREPLY < <(compgen -W "$(posternctl config -d -H 2>/dev/null)" -- "$cur")
                fi ;;
        check)
                if [ "$prev" = --postfix ]; then
                        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
                else
                        mapfile -t COMPREPLY < <(compgen -W "--postfix --json" -- "$cur")
                fi ;;
        import)
                mapfile -t COMPREPLY < <(compgen -d -- "$cur")
                [[ $cur == -* ]] && mapfile -t COMPREPLY < <(compgen -W "--to --force" -- "$cur") ;;
        queue)
                mapfile -t COMPREPLY < <(compgen -W "--json" -- "$cur") ;;
        show)
                mapfile -t COMPREPLY < <(compgen -W "-e -h -b $(_posternctl_queue_ids)" -- "$cur") ;;
        log)
                mapfile -t COMPREPLY < <(compgen -W "$(_posternctl_queue_ids)" -- "$cur") ;;
        hold|release|delete|requeue)
                mapfile -t COMPREPLY < <(compgen -W "ALL $(_posternctl_queue_ids)" -- "$cur") ;;
        qshape)
                mapfile -t COMPREPLY < <(compgen -W "-s deferred active hold incoming" -- "$cur") ;;
        tlsrpt)
                mapfile -t COMPREPLY < <(compgen -W "send show --day" -- "$cur") ;;
        esac
}
complete -F _posternctl posternctl
