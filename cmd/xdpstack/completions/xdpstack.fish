# fish completion for xdpstack: install it as
# /usr/share/fish/vendor_completions.d/xdpstack.fish, or source it.
# xdpstack itself lists the words that may come next, with what they do:
# xdpstack WORDS... --generate-bash-completion.

function __xdpstack_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    $words[1] $words[2..-1] "$cur" --generate-bash-completion 2>/dev/null
end

function __xdpstack_lists_nothing
    not count (__xdpstack_complete) >/dev/null
end

complete -c xdpstack -f -a '(__xdpstack_complete)'
# Where xdpstack lists nothing (a flag's value, a FILE), complete file names.
complete -c xdpstack -n __xdpstack_lists_nothing -F
