#ifndef DOCKNFV_CLIBIP4TC_H
#define DOCKNFV_CLIBIP4TC_H
#include <netinet/in.h>
#include <libiptc/libiptc.h>
#endif
