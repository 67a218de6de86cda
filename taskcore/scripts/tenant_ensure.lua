create_tenant()
add_key()
return 1