#ifndef DOCKNFV_CLIBMNL_H
#define DOCKNFV_CLIBMNL_H
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#endif
