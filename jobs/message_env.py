"""Which environment variables a message's query parameters may set.

Abaco passed every query parameter of a message into the container, over the
actor's ``defaultEnvironment`` (its worker updates the default environment with
the message's variables), so anyone allowed to execute an actor could set
``LD_PRELOAD``, ``BASH_ENV`` or a proxy. Here a parameter may set a variable only
when its name is on an allow-list:

- a name the actor's ``defaultEnvironment`` declares (its owner made it a
  parameter; the message's value wins, as in Abaco), or
- a lowercase name (``[a-z][a-z0-9_]*``): the variables that change how programs
  load or where they connect are uppercase (``LD_*``, ``PATH``, ``HOME``,
  ``BASH_ENV``, ``ENV``, ``PERL5OPT``, ``JAVA_TOOL_OPTIONS``, ``DOCKER_HOST``...)
  except the proxy family (``http_proxy``...), which stays refused, or
- a name matching a pattern of the ``message_env_allow`` setting.

Whatever the list says, a floor of names is never settable by a message: the
platform's own contract (``MSG``, ``_abaco_*``) and the loader, interpreter,
shell, proxy and TLS variables below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from jobs.errors import ValidationError
from jobs.models import ENV_NAME, no_nul

_LOWERCASE = re.compile(r"^[a-z][a-z0-9_]*$")
_NEVER = re.compile(
    r"^(MSG|_.*|.*_PROXY|LD_.*|DYLD_.*|PATH|HOME|USER|SHELL|IFS|ENV|BASH_ENV|BASH_FUNC_.*"
    r"|PYTHON.*|PERL5?(LIB|OPT)|RUBY(LIB|OPT)|NODE_(OPTIONS|PATH)|JAVA_TOOL_OPTIONS"
    r"|_?JAVA_OPTIONS|JDK_JAVA_OPTIONS|CLASSPATH|GCONV_PATH|LOCPATH|TMPDIR|DOCKER_.*"
    r"|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|SSL_CERT_(FILE|DIR)|GIT_.*|PS4|PROMPT_COMMAND"
    r"|NPM_CONFIG_.*|GLIBC_TUNABLES|HOSTALIASES|LUA_(C?PATH|INIT).*|NODE_EXTRA_CA_CERTS"
    r"|RES_OPTIONS|LOCALDOMAIN|MALLOC_.*|OPENSSL_.*|SSLKEYLOGFILE|XDG_.*|TERMINFO.*|TZDIR"
    r"|NLSPATH|RUBYLIB|GEM_(HOME|PATH)|BUNDLE_.*|PIP_.*|CONDA_.*|R_(LIBS.*|PROFILE.*|ENVIRON.*)"
    r"|JULIA_.*|GOFLAGS|GOPATH|CARGO_.*|RUSTFLAGS|KRB5.*|HTTPIE_.*|WGETRC|CURL_HOME)$",
    re.IGNORECASE)


def allowed_patterns(setting: str) -> tuple[re.Pattern[str], ...]:
    """The ``message_env_allow`` setting: comma-separated regular expressions."""
    return tuple(re.compile(f"^(?:{part.strip()})$") for part in setting.split(",")
                 if part.strip())


def check_message_env(env: Mapping[str, str], declared: Iterable[str],
                      extra: tuple[re.Pattern[str], ...]) -> dict[str, str]:
    """The message's variables, or a 400 naming the first one it may not set."""
    declared = set(declared)
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise ValidationError(name, "query parameter is not a valid environment name")
        if _NEVER.fullmatch(name):
            raise ValidationError(name, "query parameter may not set this variable: it "
                                        "changes how programs load or where they connect")
        if not (name in declared or _LOWERCASE.fullmatch(name)
                or any(p.fullmatch(name) for p in extra)):
            raise ValidationError(name, "query parameter may not set this variable: only "
                                        "lowercase names, names in the actor's "
                                        "defaultEnvironment, or names the message_env_allow "
                                        "setting names")
        no_nul(name, value)
    return dict(env)
