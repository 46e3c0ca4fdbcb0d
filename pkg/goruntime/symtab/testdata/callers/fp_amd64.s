#include "textflag.h"

// func callerFP() uintptr: the frame pointer of the caller (a frameless
// function leaves BP alone).
TEXT ·callerFP(SB),NOSPLIT|NOFRAME,$0-8
	MOVQ BP, ret+0(FP)
	RET
