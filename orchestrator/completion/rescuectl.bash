# bash completion for rescuectl: commands, options, and server names asked
# of rescued itself (rescuectl list, with the --url, --token and --cacert
# already on the line, or RESCUED_URL, RESCUED_TOKEN, RESCUED_CACERT).
_rescuectl_servers()
{
    local args=() i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --url | --token | --cacert)
            args+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
        esac
    done
    # The table's first column, below its header; nothing when unreachable.
    rescuectl "${args[@]}" list 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_rescuectl()
{
    local cur prev cmd="" i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="list status enter exit reboot power-on power-off events console"
    local globals="--url --token --cacert --json --help --version"

    case $prev in
    --key | --cacert)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return ;;
    --url | --token | --ttl | --timeout | --tail)
        return ;;
    esac
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i - 1]} in
        --url | --token | --cacert | --key | --ttl | --timeout | --tail)
            continue ;;
        esac
        case ${COMP_WORDS[i]} in
        -*) ;;
        *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    if [ -z "$cmd" ]; then
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$globals" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        fi
        return
    fi
    local opts=""
    case $cmd in
    enter) opts="--key --ttl --wait --timeout" ;;
    exit) opts="--wait --timeout" ;;
    events) opts="--follow" ;;
    console) opts="--tail" ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts $globals" -- "$cur")
        return
    fi
    # The server: the word after the command, once.
    local words=0
    for ((i = i + 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i - 1]} in
        --url | --token | --cacert | --key | --ttl | --timeout | --tail)
            continue ;;
        esac
        [[ ${COMP_WORDS[i]} == -* ]] || words=$((words + 1))
    done
    if [ "$cmd" != list ] && [ $words = 0 ]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_rescuectl_servers)" -- "$cur")
    fi
}
complete -F _rescuectl rescuectl
