# mpiray_warnings(<target>): the project's warning flags, errors when MPIRAY_WERROR is on.
function(mpiray_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-missing-field-initializers)
  if(MPIRAY_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
