/* env.c - see env.h. */
#include "core/env.h"

#include "core/buf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

char **dd_env_with(const char *const *extra)
{
    size_t nenv = 0, nextra = 0;
    while (environ[nenv])
        nenv++;
    while (extra && extra[nextra])
        nextra++;
    char **env = dd_xcalloc(nenv + nextra + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        bool shadowed = false;
        for (size_t j = 0; j < nextra && !shadowed; j++) {
            size_t klen = strcspn(extra[j], "=");
            shadowed = strncmp(environ[i], extra[j], klen + 1) == 0;
        }
        if (!shadowed)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < nextra; j++)
        env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}
