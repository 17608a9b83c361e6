# Writes OUT (a header defining DTRAIN_BUILD_ID) from the git commit of the
# source tree SRC, with "-dirty" when tracked files differ from it, and
# "unknown" outside a git checkout. Run at every build (lib/core/CMakeLists.txt);
# the header is rewritten only when the id changes, so nothing recompiles
# otherwise.
execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE id OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR id STREQUAL "")
  set(id "unknown")
else()
  execute_process(COMMAND git -C "${SRC}" status --porcelain --untracked-files=no
                  OUTPUT_VARIABLE changes RESULT_VARIABLE rc ERROR_QUIET)
  if(rc EQUAL 0 AND NOT changes STREQUAL "")
    set(id "${id}-dirty")
  endif()
endif()
set(text "#define DTRAIN_BUILD_ID \"${id}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
