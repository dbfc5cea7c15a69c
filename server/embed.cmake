# cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed.cmake: writes a C source
# defining `const unsigned char NAME[]` (the file's bytes plus a NUL) and
# `const size_t NAME_len` (the byte count without the NUL).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR nbytes "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE ${OUT}.tmp
  "/* Generated from ${IN} by server/embed.cmake. Do not edit. */\n"
  "#include <stddef.h>\n"
  "const unsigned char ${NAME}[] = {\n${body}0x00};\n"
  "const size_t ${NAME}_len = ${nbytes};\n")
file(RENAME ${OUT}.tmp ${OUT})
