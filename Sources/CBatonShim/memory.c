#include "CBatonShim.h"
#include <malloc.h>

int baton_release_free_memory(void) {
    return malloc_trim(0);
}
