#ifndef DOCKNFV_CLIBIP6TC_H
#define DOCKNFV_CLIBIP6TC_H
#include <netinet/in.h>
#include <libiptc/libip6tc.h>
#endif
