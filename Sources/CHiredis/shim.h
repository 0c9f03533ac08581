#ifndef CLAPPER_CHIREDIS_SHIM_H
#define CLAPPER_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
