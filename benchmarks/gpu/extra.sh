# Sourced on the GPU machine, from the project's root, after the kit's install.sh and env.sh: wrk and pytest
# from .gpu/p1/extra, unpacked by the first command (which carries p1) into /tmp, where the machine keeps them
# while it stays up; later commands only put them on the path.
extra=.gpu/p1/extra
root=/tmp/triplex-extra
if [ ! -x "$root/usr/bin/wrk" ]; then
  for deb in "$extra"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  python3 -m pip install -q --no-index --find-links "$extra/wheels" pytest
fi
libs="$root/usr/lib/x86_64-linux-gnu"
if ldconfig -p | grep -q 'libssl.so.3 '; then  # the machine's own libssl, and the kit's LuaJIT alone
  mkdir -p "$root/luajit" && ln -sf "$libs"/libluajit-5.1.so.2* "$root/luajit/"
  libs="$root/luajit"
fi
export PATH="$root/usr/bin:$PATH" LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
wrk --version 2>&1 | head -1
