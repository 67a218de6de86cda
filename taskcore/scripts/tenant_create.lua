if not create_tenant() then return 0 end
add_key()
return 1