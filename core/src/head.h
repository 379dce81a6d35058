// The head's service; see head/service.h (and head/*.h for the tables it owns).
#pragma once

#include "head/service.h"
