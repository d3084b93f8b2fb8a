# bash completion for xdpstack: source it, or install it as
# /usr/share/bash-completion/completions/xdpstack. xdpstack itself lists
# the words that may come next: xdpstack WORDS... --generate-bash-completion.

_xdpstack() {
	local cur words cword
	if declare -F _get_comp_words_by_ref >/dev/null; then
		# bash-completion's words keep --app echo=tcp://:7 whole.
		_get_comp_words_by_ref -n =: cur words cword
	else
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	fi
	local IFS=$'\n' line
	COMPREPLY=()
	for line in $("${words[0]}" "${words[@]:1:cword}" --generate-bash-completion 2>/dev/null); do
		COMPREPLY+=("${line%%$'\t'*}")
	done
}

# Where xdpstack lists nothing (a flag's value, a FILE), bash completes file names.
complete -o default -F _xdpstack xdpstack
