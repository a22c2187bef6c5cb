/* env.h - the environment handed to a process dispatchd starts.
 *
 * One builder for both places that start processes (src/proc/spawn.c, the
 * local stack's servers; src/child/child.c, the dispatcher's command): this
 * process's environment, minus every variable that extra sets, plus extra.
 * An inherited variable of the same name never shadows one of ours (a
 * DISPATCHD_RUN_ID from a parent shell must not reach the child). */
#ifndef DD_CORE_ENV_H
#define DD_CORE_ENV_H

/* extra: NULL-terminated "NAME=VALUE" strings (may be NULL). Returns a
 * NULL-terminated array; its strings are borrowed (from environ and extra,
 * which must outlive it), the array itself is the caller's to free(). */
char **dd_env_with(const char *const *extra);

#endif
